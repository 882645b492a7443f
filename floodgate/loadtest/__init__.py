"""``floodgate loadtest``: a compressed, seeded day of traffic against the sandbox, with a report.

The pieces: ``plan`` (what happens when), ``stack`` (the sandbox and the pipeline's processes),
``driver`` (users and the application playing the plan), ``sampler`` (what is measured every
second), ``summary`` (the figures), ``plots`` and ``report`` (the HTML), ``progress`` (the
terminal), ``command`` (the command line).
"""
