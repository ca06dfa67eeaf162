"""The XLA flag sgmteach sets on import (see sgmteach/_xla.py)."""

import os

import jax.numpy as jnp
import pytest

from sgmteach import _xla


def test_flag_is_active_in_this_process():
    # conftest imports sgmteach before anything computes, so the CPU backend started with it.
    assert _xla.FLAG in os.environ["XLA_FLAGS"].split()


def test_a_users_own_setting_stands(monkeypatch):
    mine = f"--{_xla.FLAG_NAME}=true --xla_dump_to=/tmp/nowhere"
    monkeypatch.setenv("XLA_FLAGS", mine)
    assert _xla.configure() is False
    assert os.environ["XLA_FLAGS"] == mine


def test_added_to_other_flags_and_warns_once_backends_run(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    float(jnp.ones(()))  # the backend is surely running by now, so the flag comes too late
    with pytest.warns(RuntimeWarning, match="before `import sgmteach`"):
        assert _xla.configure() is True
    assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=1",
                                               _xla.FLAG]
