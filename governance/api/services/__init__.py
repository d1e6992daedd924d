"""The API's services: what the routes call, each module one job with one return type.

* :mod:`~governance.api.services.engines`: the app's cache of packs, models, item
  tables and serving engines, and the decision log they share;
* :mod:`~governance.api.services.call_sink`: the engines' decision sink, which
  commits each list's decision with the trail record of the call that asked for it;
* :mod:`~governance.api.services.shadows`: the deployed shadow versions, served
  each answered request after the answer, never shown;
* :mod:`~governance.api.services.lists`: one governed list, from the request's
  reads to its decision's commit.

Routes stay HTTP only (parse, call, translate, encode); no route imports another
route or the command line.
"""
