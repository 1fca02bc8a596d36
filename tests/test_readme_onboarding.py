"""README statements a new user acts on, checked against what the code does."""

from __future__ import annotations

from pathlib import Path

from exporter.settings import Settings
from exporter.worker import WORK_JOBS, Worker
from tests.readme import section

ROOT = Path(__file__).resolve().parents[1]


def test_running_it_describes_the_worker_as_it_is(tmp_path: Path) -> None:
    """It said the pollers and the outbox would arrive "as they land"; they have."""
    text = " ".join(section("Running it").split())
    assert "as they land" not in text
    worker = Worker(Settings(db=str(tmp_path / "rb.db")))
    worker.schedule()
    worker.start_work()
    # No sources or targets configured: the jobs every worker runs.
    assert {job.id for job in worker.scheduler.get_jobs()} == {"heartbeat", "housekeeping"}
    assert set(WORK_JOBS) == {"housekeeping", "outbox"}  # plus one poll job per source
    for words in ("heartbeat", "housekeeping", "release-health pollers", "forwarding outbox"):
        assert words in text
    assert "Exactly one worker per database" in text and "stands by" in text


def test_the_docker_build_needs_buildkit_and_says_so() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RUN --mount" in dockerfile  # why BuildKit is needed
    # A `# syntax=` line makes BuildKit pull a frontend image from Docker Hub on every build.
    assert not dockerfile.startswith("# syntax=")
    docker = " ".join(section("Docker / compose").split())
    assert "needs BuildKit" in docker and "DOCKER_BUILDKIT=1" in docker
    assert "Docker 23" in docker
