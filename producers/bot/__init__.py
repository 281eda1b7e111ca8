"""The Discord bot (``summarybot bot``): slash commands, the "Summarize from here" message
command, the reaction trigger, digests, settings, opt-outs and feedback.

Handlers only parse, authorize, record and enqueue (:func:`shared.jobs.submit_job`); they never
fetch history or call an LLM.  Start with :class:`producers.bot.client.SummaryBot` and
:func:`producers.bot.runtime.build_runtime`; the access rules are in
:mod:`shared.discord.permissions` (Discord's algorithm) and :mod:`producers.bot.authorize`.
"""

__all__: list[str] = []
