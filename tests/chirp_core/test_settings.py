from __future__ import annotations

from pathlib import Path

import pytest

from chirp_core.settings import Settings


def test_environment_is_read_and_typed_and_flags_win() -> None:
    env = {"CHIRP_GRAPH_PORT": "6000", "CHIRP_DATA_DIR": "/srv/chirp", "CHIRP_DB_PREPARE_THRESHOLD": "off"}
    settings = Settings.from_env(env, tweets_port=7000)
    assert settings.graph_port == 6000
    assert settings.tweets_port == 7000
    assert settings.data_dir == Path("/srv/chirp")
    assert settings.db_prepare_threshold is None
    assert settings.graph_target == "127.0.0.1:6000"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ValueError, match="CHIRP_GRAPH_PORT"):
        Settings.from_env({"CHIRP_GRAPH_PORT": "eighty"})
    with pytest.raises(ValueError, match="CHIRP_NODE_ID"):
        Settings.from_env({"CHIRP_NODE_ID": "5000"})


def test_timeline_settings_are_checked_and_metrics_can_be_turned_off() -> None:
    settings = Settings.from_env(
        {"CHIRP_TIMELINE_MODE": "push", "CHIRP_FANOUT_WORKERS": "4", "CHIRP_METRICS_PORT": "off"}
    )
    assert (settings.timeline_mode, settings.fanout_workers, settings.metrics_port) == ("push", 4, None)
    assert Settings().timeline_mode == "hybrid"
    assert Settings().celebrity_threshold == 10_000
    with pytest.raises(ValueError, match="CHIRP_TIMELINE_MODE"):
        Settings.from_env({"CHIRP_TIMELINE_MODE": "fanout"})
    with pytest.raises(ValueError, match="CHIRP_TIMELINE_SIZE"):
        Settings.from_env({"CHIRP_TIMELINE_SIZE": "5000"})
