"""The application layer: every use case written once, for the bot, the API, the CLI and beat.

A producer parses its input, calls one function here with a :class:`~shared.services.core.Core`
(the resources its process built at start) and an :class:`~shared.services.core.Actor` (who
asks, for which guild), and renders what comes back or the error it raises
(:mod:`shared.errors`: not found, invalid input, conflict, not configured).  The rules — the
guild boundary, limits, URL policy, secrets, the job lifecycle — live here and below, never in
a producer.

=====================  ========================================================================
module                 use cases
=====================  ========================================================================
``jobs``               submit a job (authorize, validate, record, enqueue), cancel it
``schedules``          create, change, pause/resume and delete digest schedules (one cap)
``webhook_endpoints``  register, change, rotate the secret of, and delete webhook endpoints
``members``            opt a member out (or back in), erase a member's data
``replay``             re-drive dead letters and failed deliveries
=====================  ========================================================================
"""
