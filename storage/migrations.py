"""Schema, only as ordered sqlite-utils migrations. Never edit a migration once it has landed."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("releasebits")


_M001 = """
CREATE TABLE components (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of first sight: the cardinality rank
    slug TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE stages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT,
    meta_data TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    component TEXT NOT NULL REFERENCES components(slug),
    version TEXT NOT NULL,
    result TEXT,
    result_class TEXT NOT NULL,
    stage TEXT NOT NULL,
    host TEXT,
    started_at TEXT,
    finished_at TEXT NOT NULL,
    finished_ts REAL NOT NULL,
    duration_seconds REAL,
    commit_sha TEXT,
    code_name TEXT,
    branch TEXT,
    tag TEXT,
    meta_data TEXT NOT NULL DEFAULT '{}',
    release_id TEXT REFERENCES releases(id),
    received_at REAL NOT NULL
);
CREATE INDEX deployments_by_component ON deployments(component, finished_ts, seq);
CREATE INDEX deployments_by_stage ON deployments(component, stage, finished_ts);
CREATE INDEX deployments_by_release ON deployments(release_id);
CREATE TABLE builds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    component TEXT NOT NULL REFERENCES components(slug),
    version TEXT NOT NULL,
    result TEXT,
    result_class TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT NOT NULL,
    finished_ts REAL NOT NULL,
    duration_seconds REAL,
    commit_sha TEXT,
    code_name TEXT,
    branch TEXT,
    tag TEXT,
    url TEXT,
    meta_data TEXT NOT NULL DEFAULT '{}',
    received_at REAL NOT NULL
);
CREATE INDEX builds_by_component ON builds(component, finished_ts, seq);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,             -- public part of the token, used for lookup
    name TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL,       -- sha256 of the whole token; the token is never stored
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys(created_at);

-- Pre-aggregated rows, updated in the same transaction as each insert, so /metrics
-- costs O(series) and never scans events.
CREATE TABLE event_stats (
    kind TEXT NOT NULL,              -- deployment | build
    component TEXT NOT NULL,
    stage TEXT NOT NULL,             -- '' for builds
    result_class TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_ts REAL NOT NULL,
    PRIMARY KEY (kind, component, stage, result_class)
);
CREATE TABLE duration_stats (
    kind TEXT NOT NULL,
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    buckets TEXT NOT NULL,           -- JSON list: per-bucket (non-cumulative) counts
    sum REAL NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (kind, component, stage)
);
CREATE TABLE current_versions (
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    version TEXT NOT NULL,
    commit_sha TEXT,
    deployment_id TEXT NOT NULL,
    finished_ts REAL NOT NULL,
    since_ts REAL NOT NULL,          -- when this version first became current here
    PRIMARY KEY (component, stage)
);
CREATE TABLE last_builds (
    component TEXT PRIMARY KEY,
    build_id TEXT NOT NULL,
    version TEXT NOT NULL,
    result TEXT,
    result_class TEXT NOT NULL,
    finished_ts REAL NOT NULL
);
CREATE TABLE overflow (
    dimension TEXT PRIMARY KEY,      -- component | stage
    count INTEGER NOT NULL
);
CREATE TABLE worker_state (
    name TEXT PRIMARY KEY,
    value TEXT,
    updated_at REAL NOT NULL
);
"""


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """Events, components, releases, tokens, idempotency keys and the pre-aggregated rows."""
    db.executescript(_M001)


_M002 = """
CREATE TABLE release_health (
    source TEXT NOT NULL,            -- configured source name, e.g. sentry
    project TEXT NOT NULL,           -- Sentry project id / Bugsnag project id
    environment TEXT NOT NULL,       -- Sentry environment / Bugsnag release stage
    release TEXT NOT NULL,           -- Sentry release name / Bugsnag app_version
    total_sessions INTEGER,          -- NULL: the source has no data for it (not 0)
    users INTEGER,
    crash_free_sessions REAL,        -- 0..1, NULL when undefined
    crash_free_users REAL,
    sessions_by_status TEXT NOT NULL DEFAULT '{}',
    released_at REAL,                -- for "newest N releases per project"
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, project, environment, release)
);
CREATE TABLE project_targets (
    source TEXT NOT NULL,
    project TEXT NOT NULL,
    target_type TEXT,
    target_stability REAL,
    critical_stability REAL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (source, project)
);
CREATE TABLE source_status (
    source TEXT NOT NULL,
    project TEXT NOT NULL,           -- '' for a source-wide status
    up INTEGER NOT NULL,
    last_success_ts REAL,
    last_attempt_ts REAL NOT NULL,
    last_duration_seconds REAL,
    last_error TEXT,
    PRIMARY KEY (source, project)
);
"""


@migrations()
def m002_release_health(db: sqlite_utils.Database) -> None:
    """Polled release health (Sentry sessions, Bugsnag stability) and per-source poll status."""
    db.executescript(_M002)


_M003 = """
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,         -- also the webhook-id: stable across retries
    event_kind TEXT NOT NULL,        -- deployment | build | release
    event_id TEXT NOT NULL,
    component TEXT,                  -- NULL for releases
    target TEXT NOT NULL,            -- configured target name
    status TEXT NOT NULL,            -- pending | delivering | delivered | failed | disabled
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_until REAL,                -- while delivering: due again after this (crash)
    retry_since REAL NOT NULL,       -- start of the give-up horizon (reset by a retry)
    last_status INTEGER,             -- HTTP status of the last attempt
    last_error TEXT,                 -- never contains secrets
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL
);
-- claim() walks a target's pending rows in event order and stops after a batch;
-- delivered history of the target is never scanned.
CREATE INDEX deliveries_claim ON deliveries(target, status, seq);
CREATE INDEX deliveries_by_status ON deliveries(status, seq);
CREATE TABLE forward_stats (
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,           -- delivered | retried | failed | disabled
    count INTEGER NOT NULL,
    PRIMARY KEY (target, outcome)
);
CREATE TABLE forward_targets (
    target TEXT PRIMARY KEY,         -- a webhook that answered 410 is disabled here
    disabled_at REAL,
    reason TEXT
);
"""


@migrations()
def m003_outbox(db: sqlite_utils.Database) -> None:
    """The forwarding outbox: one delivery row per event and target, written with the event."""
    db.executescript(_M003)


_M004 = """
-- What the webhook receivers and `releasebits notify` feed in besides plain events.
CREATE TABLE feed_keys (
    key TEXT PRIMARY KEY,            -- natural key, e.g. github:deployment:<repo id>:<id>
    kind TEXT NOT NULL,              -- deployment | build
    event_id TEXT,                   -- the stored event once a final status arrived, else NULL
    started_ts REAL,                 -- earliest start seen before the final status
    updated_at REAL NOT NULL
);
CREATE TABLE webhook_deliveries (
    receiver TEXT NOT NULL,          -- github | gitlab | cdevents
    delivery_id TEXT NOT NULL,       -- X-GitHub-Delivery, Idempotency-Key, ce source + id
    event TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (receiver, delivery_id)
);
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries(received_at);
CREATE TABLE webhook_stats (
    receiver TEXT NOT NULL,
    event TEXT NOT NULL,             -- a fixed vocabulary per receiver, else 'other'
    outcome TEXT NOT NULL,           -- accepted | duplicate | ignored | unauthorized | invalid
    count INTEGER NOT NULL,
    PRIMARY KEY (receiver, event, outcome)
);
CREATE TABLE commits (
    component TEXT NOT NULL,
    sha TEXT NOT NULL,
    parent_sha TEXT,                 -- the commit before it in the push, or the push's `before`
    committed_ts REAL NOT NULL,
    branch TEXT,
    received_at REAL NOT NULL,
    PRIMARY KEY (component, sha)
);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    external_id TEXT,                -- the sender's id; unique per component
    title TEXT,
    url TEXT,
    deployment_id TEXT,              -- the deployment the sender names, if any
    started_ts REAL NOT NULL,
    resolved_ts REAL,
    source TEXT NOT NULL,            -- api | cdevents
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX incidents_by_external_id ON incidents(component, external_id)
    WHERE external_id IS NOT NULL;
CREATE INDEX incidents_by_stage ON incidents(component, stage, started_ts);
-- A CDEvents service.rolledback (the DORA rules count it as a rollback).
ALTER TABLE deployments ADD COLUMN rollback INTEGER NOT NULL DEFAULT 0;
"""


@migrations()
def m004_feeds(db: sqlite_utils.Database) -> None:
    """Natural keys, delivery dedupe and request counts of the webhook receivers; pushed
    commits and incidents; the rollback mark of a deployment."""
    db.executescript(_M004)


_M008 = """
-- The status page lists deployments and builds of every component newest first.
CREATE INDEX deployments_recent ON deployments(finished_ts, seq);
CREATE INDEX builds_recent ON builds(finished_ts, seq);
"""


@migrations()
def m008_ui(db: sqlite_utils.Database) -> None:
    """Indexes for the status page's newest-first feed across components."""
    db.executescript(_M008)


_M005 = """
-- DORA: rollouts (a version reaching a component and stage, however many hosts), maintained in
-- each event's transaction and read at scrape time.
ALTER TABLE deployments ADD COLUMN commits TEXT;     -- JSON [{sha, ts}] of the API's `commits`
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    version TEXT NOT NULL,
    commit_sha TEXT,
    ts REAL NOT NULL,                -- finished_at of its first deployment: the rollout's time
    last_ts REAL NOT NULL,           -- finished_at of its newest deployment
    first_deployment_id TEXT NOT NULL,
    is_rollback INTEGER NOT NULL,    -- its version was rolled out before (or CDEvents rolledback)
    crash_failure_ts REAL,           -- polled below critical stability while current
    recovery_observed INTEGER NOT NULL DEFAULT 0  -- counted in the recovery histogram
);
CREATE INDEX rollouts_by_series ON rollouts(component, stage, ts);
CREATE INDEX rollouts_by_version ON rollouts(component, stage, version, ts);
CREATE TABLE rollout_members (
    deployment_id TEXT PRIMARY KEY,
    rollout_id TEXT NOT NULL
);
CREATE INDEX rollout_members_by_rollout ON rollout_members(rollout_id);
CREATE TABLE rollout_commits (       -- each commit, the first time a rollout brings it to a stage
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    sha TEXT NOT NULL,
    rollout_id TEXT NOT NULL,
    lead_seconds REAL NOT NULL,      -- rollout time - commit time (only > 0 counts)
    PRIMARY KEY (component, stage, sha)
);
CREATE INDEX rollout_commits_by_rollout ON rollout_commits(rollout_id);
CREATE TABLE lead_time_observed (    -- commits already counted in the lead-time histogram
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (component, stage, sha)
);
ALTER TABLE incidents ADD COLUMN link_deployment_id TEXT;  -- set once, when the incident arrives
CREATE INDEX incidents_by_link ON incidents(link_deployment_id);
CREATE TABLE dora_generations (      -- bumped when a series' DORA rows change (scrape cache key)
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    gen INTEGER NOT NULL,
    PRIMARY KEY (component, stage)
);
-- Error budgets: session counters of the deployed release, each poll bucket counted once.
CREATE TABLE budget_counters (
    component TEXT NOT NULL,
    stage TEXT NOT NULL,
    source TEXT NOT NULL,
    sessions INTEGER NOT NULL DEFAULT 0,
    crashed INTEGER NOT NULL DEFAULT 0,
    watermark REAL,                  -- end of the newest bucket counted (Sentry)
    release TEXT,                    -- release whose cumulative totals were seen last (Bugsnag)
    seen_sessions INTEGER,
    seen_crashed INTEGER,
    updated_at REAL NOT NULL,
    PRIMARY KEY (component, stage, source)
);
"""


@migrations()
def m005_dora(db: sqlite_utils.Database) -> None:
    """Rollouts, their commits and incident links, DORA cache generations, error-budget
    counters (the DORA histograms live in duration_stats under their own kinds)."""
    db.executescript(_M005)


_M007 = """
-- A named lease: who may act alone (today: the one background worker per database) and until
-- when. The owner renews it with every heartbeat; anyone may take it over once it expired.
-- PostgreSQL replicas elect their worker through the same row.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,           -- what is leased, e.g. 'worker'
    owner TEXT NOT NULL,             -- host:pid:random of the holder
    acquired_at REAL NOT NULL,       -- when this owner took it
    renewed_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""


@migrations()
def m007_onboarding(db: sqlite_utils.Database) -> None:
    """Leases: exactly one background worker per database, however many daemons share it."""
    db.executescript(_M007)
