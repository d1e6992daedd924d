"""The policy packs recgov ships, as data (YAML); read them through ``governance.packs``."""
