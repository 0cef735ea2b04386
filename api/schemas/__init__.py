"""Request and public response models of the API: they import only pydantic (and accel's plain models)."""
