"""The benchmark runs servers on bytecode compiled ahead, as the images do (``bench.infra.precompile``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bench.infra import precompile


def test_precompile_writes_the_bytecode_a_server_would_otherwise_compile_at_each_start(tmp_path: Path) -> None:
    module = tmp_path / "package" / "module.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    broken = tmp_path / "package" / "broken.py"
    broken.write_text("def (:\n")
    assert precompile([tmp_path]) is False  # one file does not compile; the others still do
    assert Path(importlib.util.cache_from_source(str(module))).is_file()
    broken.unlink()
    assert precompile([tmp_path]) is True
