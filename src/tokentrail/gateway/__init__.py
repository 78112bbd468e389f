"""`tokentrail gateway`: an HTTP gateway any client points its base URL at; each call is forwarded to
its provider, relayed back as it arrives, and recorded, priced and budgeted by the same tracker, adapters
and budgets as in-process calls. Imported only by its command (it needs aiohttp, uvicorn and
prometheus_client: `pip install 'tokentrail[gateway]'`).

    app = Gateway(GatewayConfig({"openai": parse_upstream("openai=https://api.openai.com")}))
    uvicorn.run(app)
"""

from tokentrail.gateway._app import DEFAULT_STORE, Gateway, GatewayConfig
from tokentrail.gateway._upstream import Upstream, parse_upstream
from tokentrail.gateway.keys import KeyStore, SQLiteKeyStore, VirtualKey, open_key_store

__all__ = [
    "DEFAULT_STORE",
    "Gateway",
    "GatewayConfig",
    "KeyStore",
    "SQLiteKeyStore",
    "Upstream",
    "VirtualKey",
    "open_key_store",
    "parse_upstream",
]
