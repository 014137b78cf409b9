"""ESPnet S2T glue: the context-conditioned model, task options, inference."""
