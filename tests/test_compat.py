"""The private names of third-party packages in src/makemore_sweep/compat/ still exist and behave."""

from __future__ import annotations

from makemore_sweep.compat.hydra import parse_hydra_command_line


def test_hydra_command_line_parser_splits_flags_from_overrides() -> None:
    parsed = parse_hydra_command_line(["-m", "model.n_hidden=100,200", "--cfg", "job", "+model.x=1"])
    assert parsed is not None
    assert parsed.overrides == ["model.n_hidden=100,200", "+model.x=1"]
    assert parsed.multirun and parsed.cfg == "job"
    assert parsed.config_name is None and parsed.config_dir is None and not parsed.help


def test_hydra_command_line_parser_leaves_refusals_and_exits_to_hydra() -> None:
    assert parse_hydra_command_line(["--cfg", "nosuch"]) is None
    assert parse_hydra_command_line(["--version"]) is None
