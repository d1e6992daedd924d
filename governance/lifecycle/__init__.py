"""A model's life after training: monitoring's triggers, retrain tickets, the retrain pipeline, retirement.

* :mod:`governance.lifecycle_section` -- the pack's ``lifecycle`` section (triggers, canary, retirement), beside the pack schema it belongs to;
* :mod:`governance.lifecycle.triggers` -- which triggers a monitoring pass fires, and the tickets they open;
* :mod:`governance.lifecycle.pipeline` -- a ticket's retrain: train, gate, shadow, canary, watch, promote or roll back;
* :mod:`governance.lifecycle.retirement` -- which deployed models meet a retirement criterion;
* :mod:`governance.lifecycle.rules` -- Prometheus alerting rules from the pack.
"""
