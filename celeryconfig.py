"""Celery settings only: queues, routes, at-least-once delivery, serialization, time limits.

Broker URLs and the visibility timeout come from the validated settings; the app factory in
``workers.app`` applies them.  Every time bound below derives from one visibility timeout, so
no countdown, retry backoff or task run can outlive it (which would make Redis redeliver a
message that is still being worked on).
"""

from kombu import Exchange, Queue

QUEUES = ("fetch", "summarize", "deliver", "maintenance")

task_queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES)
task_default_queue = "maintenance"
task_routes = {
    "summarybot.fetch": {"queue": "fetch", "routing_key": "fetch"},
    "summarybot.summarize": {"queue": "summarize", "routing_key": "summarize"},
    "summarybot.summarize.*": {"queue": "summarize", "routing_key": "summarize"},
    "summarybot.deliver": {"queue": "deliver", "routing_key": "deliver"},
    "summarybot.maintenance.*": {"queue": "maintenance", "routing_key": "maintenance"},
}

# At-least-once: ack after the task returns, requeue when a pool child dies, reserve one
# message at a time.  Tasks are idempotent against the jobs table, so a redelivery is harmless.
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = True  # on Redis a reject without requeue drops the message
task_acks_on_timeout = True  # requeueing a task that hit its hard limit would loop
worker_prefetch_multiplier = 1
worker_cancel_long_running_tasks_on_connection_loss = True
worker_deduplicate_successful_tasks = False
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
task_publish_retry = True
task_publish_retry_policy = {
    "max_retries": 5,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 3,
}

# JSON only: no pickle anywhere.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
event_serializer = "json"

# The jobs table is the record of results; Celery results are not needed.
task_ignore_result = True
result_expires = 3 * 86400

# Events for Flower and monitoring.
worker_send_task_events = True
# No task-sent events: each would be a second Redis round trip (a PUBLISH) on every submit
# and stage hand-over.  Flower sees a task from "received" on; the jobs table and the
# queue-length metrics show what waits.
task_send_sent_event = False

worker_hijack_root_logger = False
worker_redirect_stdouts = False
worker_max_tasks_per_child = 500
worker_soft_shutdown_timeout = 30.0
worker_enable_soft_shutdown_on_idle = True
timezone = "UTC"
enable_utc = True

# Beat is only a clock: it publishes maintenance sweeps; user schedules live in Postgres.
# (name, task in summarybot.maintenance, every N seconds, expires after N seconds: a sweep that
# waited longer than its period is dropped, the next one does its work.)
_SWEEPS = (
    ("redrive-deliveries", "redrive_deliveries", 10.0, 9),
    ("dispatch-due-digests", "dispatch_due_digests", 30.0, 25),
    ("purge-expired", "purge_expired", 86400.0, 3600),
    ("requeue-stale-jobs", "requeue_stale_jobs", 60.0, 55),
)
beat_schedule = {
    name: {
        "task": f"summarybot.maintenance.{task}",
        "schedule": every,
        "options": {"expires": expires},
    }
    for name, task, every, expires in _SWEEPS
}

#: Default visibility timeout (seconds); override with the VISIBILITY_TIMEOUT setting.
VISIBILITY_TIMEOUT = 3600


def retry_backoff_cap(visibility_timeout: int) -> int:
    """Longest retry countdown: a twelfth of the visibility timeout (300 s for 3600 s)."""
    return max(1, int(visibility_timeout) // 12)


def time_bounds(visibility_timeout: int) -> dict[str, object]:
    """Every setting that must stay below the visibility timeout, derived from it.

    Hard time limit a quarter of it, soft limit a little earlier (retry backoff is capped by
    :func:`retry_backoff_cap`), and the unacked-restore sweep frequent enough to matter.
    """
    vt = int(visibility_timeout)
    hard = vt // 4
    soft = hard - max(2, hard // 15)
    transport = {
        "visibility_timeout": vt,
        "unacked_restore_interval": min(10, max(1, vt // 120)),
        "unacked_restore_throttle": 3,
        "socket_keepalive": True,
        "health_check_interval": 25,
        "retry_on_timeout": True,
    }
    return {
        "visibility_timeout": vt,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": vt},
        "task_time_limit": hard,
        "task_soft_time_limit": soft,
        "worker_eta_task_limit": 1000,
    }
