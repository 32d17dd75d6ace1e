"""Every ```python block of README.md runs as written (in order, one namespace per block)."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index):
    source = python_blocks()[index]
    for module in ("timm", "onnxruntime"):  # the "test" extra (pyproject.toml) installs them
        if f"import {module}" in source:
            pytest.importorskip(module)
    exec(compile(source, f"README.md python block {index}", "exec"), {})
