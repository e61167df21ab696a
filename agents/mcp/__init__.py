"""Warden as an MCP gateway: upstream MCP servers an organisation registers (models,
services, selectors, API) and the ASGI gateway in front of them (``gateway.py``)."""
