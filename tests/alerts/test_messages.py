"""Who is told to do what: staff get the acknowledge command, family and regulators do not."""

from __future__ import annotations

from datetime import timedelta

from alerts import DeliveryPolicy
from tests.support import rows

from .test_escalation import contact, policy, raise_alarm, registry, run_escalate
from .test_lifecycle import T0


def bodies(url: str, alarm_id: int) -> dict[str, str]:
    return dict(
        rows(
            url,
            "SELECT c.name, n.body FROM notifications n JOIN contacts c ON c.id = n.contact_id"
            " WHERE n.alarm_id = %s",
            (alarm_id,),
        )
    )


def test_family_and_regulator_are_not_told_to_run_a_command(database):
    registry(database)
    contact(database, "care", "care_worker")
    contact(database, "care-en", "care_worker", language="en")
    contact(database, "family-zh", "family", resident="r-a")
    contact(database, "family-en", "family", resident="r-a", language="en")
    contact(database, "desk-119", "regulator_desk")
    contact(database, "desk-en", "regulator_desk", language="en")
    roles = ["care_worker", "family", "regulator_desk"]
    policy(database, "fac-1", [{"after_s": 0, "roles": roles}])
    fall = raise_alarm(database, "fall", "w-a", T0, resident="r-a", device="w-a")
    run_escalate(database, T0 + timedelta(seconds=1))

    got = bodies(database, fall)
    assert f"ankang alarms ack {fall}" in got["care"]
    assert f"ankang alarms ack {fall}" in got["care-en"]
    for name in ("family-zh", "family-en", "desk-119", "desk-en"):
        assert "ankang" not in got[name], name
    assert "请致电机构值班电话" in got["family-zh"]
    assert "请致电机构值班电话" in got["desk-119"]
    assert "call the facility's duty phone" in got["family-en"]
    assert "call the facility's duty phone" in got["desk-en"]


def test_the_lease_is_about_the_longest_send_plus_a_margin():
    rules = DeliveryPolicy()
    # A send waits at most send_timeout_s for a thread and then send_timeout_s for the channel.
    assert 2 * rules.send_timeout_s < rules.lease_s <= 2 * rules.send_timeout_s + 30
