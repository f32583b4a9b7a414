"""Command-line interfaces: ``arbd`` (:mod:`arbd.cli.main`) and ``arbctl`` (``arbd.cli.arbctl``)."""
