"""Two writers update the same flag at the same moment with the version they both read: one wins
(200), the other gets 409, and nothing is lost or half-applied (optimistic concurrency: the
service re-reads the row under a lock and compares versions)."""

import threading

import pytest
from django.db import connections

from audit.models import AuditEntry
from flags.models import Flag

from .conftest import Client, create_flag

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
ROUNDS = 10


def race(key, body_for, version):
    """Both writers PATCH at once (a barrier releases them together); returns {writer: response}."""
    barrier = threading.Barrier(2)
    answers = {}

    def write(writer):
        client = Client(key)
        try:
            barrier.wait(timeout=10)
            answers[writer] = client.patch("/api/flags/f", body_for(writer), HTTP_IF_MATCH=f'"{version}"')
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(writer,)) for writer in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_two_writers_same_version__one_200_one_409_no_lost_update(keys):
    create_flag("f")
    editor = Client(keys["editor"])

    for round_ in range(ROUNDS):
        version = editor.get("/api/flags/f").json()["version"]
        updates_before = AuditEntry.objects.filter(action="flag.updated").count()

        answers = race(keys["editor"], lambda writer: {"description": f"{writer}-{round_}"}, version)

        statuses = sorted(response.status_code for response in answers.values())
        assert statuses == [200, 409], {w: r.content[:200] for w, r in answers.items()}
        winner = next(w for w, r in answers.items() if r.status_code == 200)
        loser = answers["b" if winner == "a" else "a"]
        assert loser.json()["error"]["code"] == "conflict"
        flag = Flag.objects.get(key="f")
        assert flag.description == f"{winner}-{round_}" == answers[winner].json()["description"]
        updates = list(AuditEntry.objects.filter(action="flag.updated").order_by("id"))
        assert len(updates) == updates_before + 1  # the loser left no audit entry
        assert updates[-1].after["description"] == f"{winner}-{round_}"
