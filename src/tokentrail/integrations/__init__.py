"""Framework integrations: attribution (agent, session, tool, tags) from each framework's own notion of
agent, run and tool, and recording of the calls no instrumented SDK layer sees.

Each module imports its framework only when imported itself (none is imported by `import tokentrail`),
and offers `enable(tracker=None)` — the one line that hooks the framework's own observation point — and
`disable()`. Which layer records a call that several layers see is decided once, in `tokentrail._claims`.
"""
