"""`torchdoctor report`: one self-contained HTML page for a machine or a fleet.

Everything here but `sources.py` and `local.py` is pure: documents and histories in, an HTML
string out. The page is what a person sees, so it lives in `agent/`; what it shows comes from the
`check --json` contract and the histories `service/` keeps.
"""
