"""``mqtthub inbox``: the desktop window in which a person receives their tasks.

Built on :class:`mqtthub.client.TaskListener`. The pure parts (:mod:`.tasks`: task states;
:mod:`.status`: what the status bar says) and the local task file (:mod:`.store`) need no
GUI toolkit; :mod:`.window` and :mod:`.app` need Qt (``pip install 'mqtthub[desktop]'``).
"""
