"""Response compression and PostgreSQL connection pooling, before/after. Prints numbers.

    .venv/bin/python bench/ops.py                     # gzip on SQLite (temporary file)
    DATABASE_URL=postgres://... .venv/bin/python bench/ops.py   # + pool vs no pool vs persistent

Each variant runs in a fresh interpreter (settings are read at import): 200 flags, then the
flag list (limit=200), the SDK snapshot and a small evaluation, each through Django's test client
in 8 threads; prints bytes on the wire and requests per second."""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r'''
import json, os, sys, threading, time
import django
os.environ["DJANGO_SETTINGS_MODULE"] = "flagsite.settings"
django.setup()
from django.core.management import call_command
from django.test.utils import setup_test_environment
setup_test_environment()
from django.db import connection
from django.test.utils import setup_databases
old = setup_databases(1, False)
from audit.actor import Actor
from flags import services
from flags.models import Environment
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
actor = Actor.system("bench")
for i in range(200):
    services.flag_create(actor=actor, key=f"flag-{i:03d}", name=f"Flag {i}", description="bench flag " * 5,
                         states={"production": {"enabled": True, "rules": [{"type": "percentage", "operator": "less_than", "value": 50}]}})
user = get_user_model().objects.create_superuser("bench", "b@example.com", "x")
_, mgmt = services.api_key_create(actor=actor, name="m", kind="management", user=user)
_, sdk = services.api_key_create(actor=actor, name="s", kind="sdk", environment=Environment.objects.get(key="production"))
paths = [("GET", "/api/flags?environment=production&limit=200", mgmt, None),
         ("GET", "/api/sdk/snapshot", sdk, None),
         ("POST", "/api/evaluate", sdk, json.dumps({"flagId": "flag-001", "userId": "u"}))]
out = {}
for method, path, key, body in paths:
    def one(client):
        if method == "GET":
            return client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT_ENCODING="gzip")
        return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT_ENCODING="gzip")
    r = one(APIClient()); assert r.status_code == 200, r.content[:200]
    size = len(r.content); enc = r.get("Content-Encoding", "-")
    n = int(os.environ.get("BENCH_N", "300")); threads = 8; done = []
    def work():
        c = APIClient()
        for _ in range(n // threads):
            one(c)
        done.append(1)
        connection.close()
    t0 = time.perf_counter()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    out[path.split("?")[0]] = {"bytes": size, "encoding": enc, "rps": n / (time.perf_counter() - t0)}
print("RESULT " + json.dumps(out))
'''


def run(label, env):
    full = {**os.environ, **env, "FLAGS_RATE_LIMIT_EVALUATE": "off", "FLAGS_RATE_LIMIT_MANAGEMENT": "off",
            "FLAGS_ANALYTICS_AUTOFLUSH": "false"}
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=full, capture_output=True, text=True, timeout=600)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if not line:
        print(label, "FAILED", proc.stderr[-2000:])
        return
    for path, r in json.loads(line[0][7:]).items():
        print(f"{label:<28} {path:<20} {r['bytes']:>9} B  {r['encoding']:<5} {r['rps']:>8.0f} req/s")


if __name__ == "__main__":
    if not os.environ.get("DATABASE_URL"):
        os.environ["FLAGSITE_TEST_DB"] = os.path.join(tempfile.mkdtemp(prefix="flagsite-ops-bench-"), "t.sqlite3")
    print(f"{'variant':<28} {'path':<20} {'response':>11}  enc   throughput (8 threads, test client)")
    run("gzip off", {"FLAGS_GZIP": "false"})
    run("gzip on (>= 1 KB JSON)", {"FLAGS_GZIP": "true"})
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        run("PG no pool, CONN_MAX_AGE=0", {"DB_CONN_MAX_AGE": "0"})
        run("PG persistent CONN_MAX_AGE=60", {"DB_CONN_MAX_AGE": "60"})
        run("PG DB_POOL=true", {"DB_POOL": "true"})
