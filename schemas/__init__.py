"""The JSON Schemas recgov publishes (generated); read them through ``governance.packs``."""
