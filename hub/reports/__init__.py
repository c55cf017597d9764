"""Reports people read: a project's month (safety grade and its reasons, alarms and their
handling, energy, device online rates) as HTML, PDF and Excel. :mod:`.data` computes,
:mod:`.render` renders, :mod:`.cli` is ``hub report``; the API serves them
(:mod:`hub.api.routes_analysis`)."""
