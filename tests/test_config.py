"""Settings come from the environment, validated, naming the variable at fault."""

from __future__ import annotations

import pytest

from lkpool.config import ConfigError, Settings


def test_env_values_are_parsed() -> None:
    """Numbers, booleans and choices are read from their variables."""
    s = Settings.from_env({"NUM_WARM": "2", "MAX_INSTANCES": "4", "CAPTURE": "screencast",
                           "AUDIO": "off", "IDLE_TIMEOUT": "12.5"})
    assert (s.num_warm, s.max_instances, s.capture, s.audio, s.idle_timeout) == (
        2, 4, "screencast", False, 12.5)


@pytest.mark.parametrize("env,needle", [
    ({"NUM_WARM": "many"}, "NUM_WARM"), ({"CAPTURE": "vnc"}, "CAPTURE"),
    ({"PORT": "70000"}, "PORT"), ({"ENGINE": "firefox"}, "ENGINE"),
    ({"NUM_WARM": "5", "MAX_INSTANCES": "2"}, "NUM_WARM"), ({"AUDIO": "maybe"}, "AUDIO"),
    ({"FRAMERATE": "0"}, "FRAMERATE"), ({"WIDTH": "5000"}, "WIDTH"),
])
def test_bad_values_name_the_variable(env: dict, needle: str) -> None:
    """A bad value raises ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_settings_are_frozen() -> None:
    """One frozen object goes everywhere; replace() makes a changed copy."""
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]
    assert s.replace(port=1).port == 1 and s.port == 8888
