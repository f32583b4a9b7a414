#!/usr/bin/env bash
# Builds arbd as a program that runs on Linux machines without Python, from PyPI packages only:
#
#   dist/arbd/                      onedir build (the .deb's /opt/arbd; ~50 ms start)
#   dist/arbd-<version>-linux-<arch>  onefile build: one executable (~250 ms start, unpacks
#                                   itself to a temporary directory on every run)
#   dist/arbd_<version>_<arch>.deb  the onedir build, /usr/bin links, the systemd unit,
#                                   /etc/arbd/arbd.toml (conffile), the arbd system user
#
# Both executables are arbd and arbctl at once: run as "arbctl" (a link of that name) or as
# "arbd ctl ..." they are arbctl. Usage: packaging/build.sh [--no-onefile] [--no-deb]
set -euo pipefail
cd "$(dirname "$0")/.."

onefile=1
deb=1
for arg in "$@"; do
    case "$arg" in
        --no-onefile) onefile=0 ;;
        --no-deb) deb=0 ;;
        *) echo "packaging/build.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

build=build/pkg
venv="$build/venv"
mkdir -p "$build" dist
if [ ! -x "$venv/bin/pyinstaller" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "pyinstaller>=6.10"
fi
# A regular (not editable) install: PyInstaller collects from site-packages, with the compiled
# order-book loop built for this machine.
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps .
"$venv/bin/python" -m pip install -q .

version=$("$venv/bin/python" -c 'import arbd; print(arbd.__version__)')
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)

collect=(--copy-metadata arbd --collect-submodules arbd)
for plugin in arbd_binance arbd_bybit arbd_coinbase arbd_kraken arbd_okx arbd_simplex; do
    collect+=(--collect-submodules "$plugin")
done
pyinstall() {
    "$venv/bin/pyinstaller" --noconfirm --clean --log-level WARN \
        --workpath "$build/work" --specpath "$build" --distpath "$1" "${@:2}" \
        "${collect[@]}" packaging/entry.py
}

echo "== onedir: dist/arbd/"
rm -rf dist/arbd
pyinstall dist --onedir --name arbd
ln -sf arbd dist/arbd/arbctl

if [ "$onefile" = 1 ]; then
    echo "== onefile: dist/arbd-$version-linux-$(uname -m)"
    pyinstall "$build/onefile" --onefile --name arbd
    mv -f "$build/onefile/arbd" "dist/arbd-$version-linux-$(uname -m)"
fi

if [ "$deb" = 1 ]; then
    echo "== deb: dist/arbd_${version}_${arch}.deb"
    stage="$build/deb/arbd_${version}_${arch}"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/lib/systemd/system" \
        "$stage/etc/arbd" "$stage/usr/share/doc/arbd"
    cp -a dist/arbd "$stage/opt/arbd"
    rm -f "$stage/opt/arbd/arbctl"
    ln -s /opt/arbd/arbd "$stage/usr/bin/arbd"
    ln -s /opt/arbd/arbd "$stage/usr/bin/arbctl"
    install -m 0644 systemd/arbd.service "$stage/lib/systemd/system/arbd.service"
    dist/arbd/arbd config init "$stage/etc/arbd/arbd.toml" >/dev/null
    chmod 0640 "$stage/etc/arbd/arbd.toml"
    for doc in README.md docs/operations.md docs/configuration.md docs/protocol.md; do
        if [ -f "$doc" ]; then install -m 0644 "$doc" "$stage/usr/share/doc/arbd/"; fi
    done
    size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
        packaging/deb/control > "$stage/DEBIAN/control"
    install -m 0644 packaging/deb/conffiles "$stage/DEBIAN/conffiles"
    for script in postinst prerm postrm; do
        install -m 0755 "packaging/deb/$script" "$stage/DEBIAN/$script"
    done
    fakeroot dpkg-deb --build -Zxz "$stage" "dist/arbd_${version}_${arch}.deb" >/dev/null
    dpkg-deb --info "dist/arbd_${version}_${arch}.deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Installed-Size\):/  \1:/p'
fi
echo "== done"
