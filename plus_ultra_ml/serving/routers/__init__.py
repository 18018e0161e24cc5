"""The service's endpoints, one module per group; each builds an `APIRouter` over one `ServiceState`.

status.py   GET /health, /config, /curriculum, /metrics (open: no API key)
predict.py  POST /predict (the API key unless ``service.predict_requires_key`` is false)
reload.py   POST /reload (the API key; loads the registry's production pointer, nothing else)
"""
