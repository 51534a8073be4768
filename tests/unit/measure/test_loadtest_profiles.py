"""Load-test profiles: the shipped ones load, and bad ones are refused with the reason."""
import pytest

from shoprank import config
from shoprank.measure.loadtest.profiles import Candidates, load_profile


def test_shipped_profiles_load_and_bad_ones_are_refused(tmp_path):
    for name in ("cpu", "gpu"):
        profile = load_profile(name)
        assert profile.targets.p95_ms and profile.users >= 1 and profile.capacity_users
    bad = tmp_path / "t.toml"
    bad.write_text('[profiles.x]\nusers = 1\nspawn_rate = 1\nrun_time_s = 1\nfoo = 2\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_profile("x", bad)
    with pytest.raises(ValueError, match="no profile 'nope'"):
        load_profile("nope", bad)
    for spec in ("uniform:5", "normal:1:2", "uniform:20:10", f"fixed:{config.MAX_CANDIDATES + 1}"):
        with pytest.raises(ValueError, match="candidates"):
            Candidates.parse(spec)
