"""What a task call carries to a worker: pickled, its shared parts travel once."""

from __future__ import annotations

import pickle
from pathlib import Path

from neuroferry.config import Settings
from neuroferry.engine import TaskInstance
from neuroferry.engine._runner import TaskCall
from neuroferry.grants import access_for


def test_calls_pickled_together_carry_their_settings_once_and_come_back_whole(
    tmp_path: Path,
) -> None:
    settings = Settings(home=tmp_path / "home", grants={"alice": {"source_roots": [tmp_path]}})
    access = access_for(settings, "alice", "user")
    kind_settings = {"limit": 3}
    calls = [
        TaskCall(
            TaskInstance(job_id=1, kind="example", job_name="j", task="run", map_index=i),
            fn="example:run",
            settings=settings,
            access=access,
            kind_settings=kind_settings,
        )
        for i in range(20)
    ]
    one = len(pickle.dumps(calls[:1]))
    assert len(pickle.dumps(calls)) < 5 * one  # not 20 copies of the settings
    back = pickle.loads(pickle.dumps(calls))
    assert [c.instance for c in back] == [c.instance for c in calls]
    first = back[0]
    assert first.fn == "example:run" and first.kind_settings == {"limit": 3}
    assert first.settings.model_dump() == settings.model_dump()
    assert first.access == access
    # decoded once: every call of the batch, and of a later batch, shares them
    again = pickle.loads(pickle.dumps(calls[:2]))
    assert all(c.settings is first.settings and c.access is first.access for c in back + again)
    # another owner's access is another pickle: never mixed up with alice's
    bob = access_for(settings, "bob", "user")
    other = TaskCall(calls[0].instance, "example:run", settings, bob)
    assert pickle.loads(pickle.dumps(other)).access.user == "bob"
