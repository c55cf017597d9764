"""The northbound HTTP API (FastAPI, served by uvicorn on the hub's own asyncio loop).

Importing this package stays cheap (the configuration imports :mod:`hub.api.settings`);
FastAPI is imported by :mod:`hub.api.app` and :mod:`hub.api.service` only.
"""
