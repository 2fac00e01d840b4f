"""The run report: typed records (``model``), measured and assembled during ``compress run`` (``build``),
written as report.json / report.md (``render``), and read back to merge device profiles (``read``)."""
