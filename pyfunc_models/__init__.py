"""Models for the platform: the JSON codec base class and the example models.

Importing this package is cheap on purpose: the client imports
``pyfunc_models.wire`` without pulling in MLflow or MLServer.  Import
``pyfunc_models.codec`` (base class), ``pyfunc_models.catalog`` (the
registered example models) or ``pyfunc_models.registration`` as needed.
"""
