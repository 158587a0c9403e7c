"""chDB's allocator decay and library pages (ingest/embedded_memory.py), each in a subprocess: the options are
read when the library loads, and the test process has loaded chDB already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agentledger.ingest.embedded_memory import configure_allocator


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


_DECAY_OF_ENGINE = (
    "import sys\n"
    "from agentledger.ingest.embedded_memory import configure_allocator\n"
    "print(configure_allocator(int(sys.argv[1])))\n"
    "from agentledger.ingest.clickhouse import chdb_dsn, connect\n"
    "client = connect(chdb_dsn(__import__('pathlib').Path(sys.argv[2])), 'agentledger')\n"
    "text = client.query('SELECT * FROM system.jemalloc_stats').result_rows[0][0]\n"
    "print([line.strip() for line in text.splitlines() if line.strip().startswith('opt.dirty_decay_ms')])\n"
)


def test_the_dirty_decay_reaches_chdbs_allocator(tmp_path: Path) -> None:
    output = _run(_DECAY_OF_ENGINE, "250", str(tmp_path / "chdb"))

    assert output.splitlines() == ["True", "['opt.dirty_decay_ms: 250 (arenas.dirty_decay_ms: 250)']"]


def test_the_decay_still_reaches_chdb_after_everything_up_imports(tmp_path: Path) -> None:
    # `agentledger up` sets the decay after its modules are imported: none of them may load chDB (an eager
    # import of clickhouse-connect's chDB backend did, and the decay was silently not applied).
    script = "import agentledger.cli, agentledger.service, agentledger.query_api.app\n" + _DECAY_OF_ENGINE
    output = _run(script, "250", str(tmp_path / "chdb"))

    assert output.splitlines() == ["True", "['opt.dirty_decay_ms: 250 (arenas.dirty_decay_ms: 250)']"]


def test_other_allocator_options_of_the_environment_are_kept_and_the_decay_replaced(tmp_path: Path) -> None:
    script = (
        "import os\n"
        "os.environ['JE_MALLOC_CONF'] = 'narenas:3,dirty_decay_ms:9000'\n"
        "from agentledger.ingest.embedded_memory import configure_allocator\n"
        "configure_allocator(0)\n"
        "print(os.environ['JE_MALLOC_CONF'])\n"
    )

    assert _run(script) == "narenas:3,dirty_decay_ms:0"


def test_a_decay_cannot_be_set_once_chdb_is_loaded() -> None:
    import chdb  # noqa: F401  (the test process's engine)

    assert configure_allocator(0) is False


def test_released_library_pages_leave_the_resident_set_and_queries_still_answer(tmp_path: Path) -> None:
    script = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from agentledger.ingest.clickhouse import chdb_dsn, connect\n"
        "from agentledger.ingest.embedded_memory import release_library_pages\n"
        "def library_rss_kib():\n"
        "    total, inside = 0, False\n"
        "    for line in Path('/proc/self/smaps').read_text().splitlines():\n"
        "        if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):\n"
        "            fields = line.split()\n"
        "            inside = len(fields) > 5 and fields[5].endswith('.so') and '/chdb/_chdb' in fields[5]\n"
        "            inside = inside and 'w' not in fields[1]\n"
        "        elif inside and line.startswith('Rss:'):\n"
        "            total += int(line.split()[1])\n"
        "    return total\n"
        "def clean_library_ranges():\n"
        "    total, size = 0, 0\n"
        "    for line in Path('/proc/self/smaps').read_text().splitlines():\n"
        "        fields = line.split()\n"
        "        if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):\n"
        "            low, high = (int(x, 16) for x in fields[0].split('-'))\n"
        "            readonly = len(fields) > 5 and '/chdb/_chdb' in fields[5] and 'w' not in fields[1]\n"
        "            size = high - low if readonly else 0\n"
        "        elif line.startswith('Anonymous:') and size:\n"
        "            total += size if int(fields[1]) == 0 else 0\n"
        "    return total\n"
        "client = connect(chdb_dsn(Path(sys.argv[1])), 'agentledger')\n"
        "before, expected = library_rss_kib(), clean_library_ranges()\n"
        "advised = release_library_pages()\n"
        "after = library_rss_kib()\n"
        "print(advised == expected > 0, before > 50 * 1024, after < before / 2)\n"
        "print(client.query('SELECT sum(number) FROM numbers(1000)').result_rows)\n"
    )

    assert _run(script, str(tmp_path / "chdb")).splitlines() == ["True True True", "[(499500,)]"]


def test_pages_faulted_back_in_after_start_are_released_again_until_stopped(tmp_path: Path) -> None:
    script = (
        "import re, sys, threading, time\n"
        "from pathlib import Path\n"
        "from agentledger.ingest.clickhouse import chdb_dsn, connect\n"
        "from agentledger.ingest.embedded_memory import release_library_pages, release_library_pages_every\n"
        "def library_rss_kib():\n"
        "    total, inside = 0, False\n"
        "    for line in Path('/proc/self/smaps').read_text().splitlines():\n"
        "        if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):\n"
        "            fields = line.split()\n"
        "            inside = len(fields) > 5 and '/chdb/_chdb' in fields[5] and 'w' not in fields[1]\n"
        "        elif inside and line.startswith('Rss:'):\n"
        "            total += int(line.split()[1])\n"
        "    return total\n"
        "client = connect(chdb_dsn(Path(sys.argv[1])), 'agentledger')\n"
        "release_library_pages()\n"
        "client.command('CREATE TABLE t (k UInt64, s String) ENGINE = MergeTree ORDER BY k')\n"
        'client.command("INSERT INTO t SELECT number, toString(number) FROM numbers(100000)")\n'
        "client.query('SELECT s, count() FROM t GROUP BY s ORDER BY s LIMIT 1')\n"
        "touched = library_rss_kib()\n"
        "stop = threading.Event()\n"
        "thread = threading.Thread(target=release_library_pages_every, args=(0.01, stop))\n"
        "thread.start()\n"
        "deadline = time.monotonic() + 60\n"
        "while library_rss_kib() >= touched / 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "released = library_rss_kib()\n"
        "stop.set()\n"
        "thread.join(60)\n"
        "print(touched > 4 * 1024, released < touched / 2, thread.is_alive())\n"
        "print(client.query('SELECT count() FROM t').result_rows)\n"
    )

    assert _run(script, str(tmp_path / "chdb")).splitlines() == ["True True False", "[(100000,)]"]


def test_without_chdb_loaded_nothing_is_released() -> None:
    script = "from agentledger.ingest.embedded_memory import release_library_pages\nprint(release_library_pages())"

    assert _run(script) == "0"
