"""Malformed quantization configs (issue 16, found by fc.fuzz): one line naming the file."""

from __future__ import annotations

import pytest

from fc.quant.config import ConfigError, load_config


@pytest.mark.parametrize("text", [
    pytest.param("\x00MODEL: {}\n", id="nul_character"),
    pytest.param("MODEL:\n  graph: [\n", id="unclosed_flow"),
    pytest.param("a: b: c\n", id="mapping_in_scalar"),
])
def test_invalid_yaml_is_one_line(text: str, tmp_path) -> None:
    path = tmp_path / "q.yml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}: invalid YAML") as err:
        load_config(path)
    assert "\n" not in str(err.value)
