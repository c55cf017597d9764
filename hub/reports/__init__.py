"""Reports people read: a project's day, ISO week or month (safety grade and its reasons,
alarms and their handling, energy, device online rates) as HTML, PDF and Excel.
:mod:`.data` computes, :mod:`.render` renders, :mod:`.archive` keeps them in
``<state_dir>/reports``, :mod:`.schedule` makes them on the hub's clock, :mod:`.cli` is
``hub report``; the API serves them (:mod:`hub.api.routes_analysis`,
:mod:`hub.api.routes_reports`)."""
