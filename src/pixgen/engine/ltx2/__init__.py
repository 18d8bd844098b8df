"""The LTX-2 backend (``engine.LTX2Engine``) and what only it needs: recipes per checkpoint, loading, geometry,
the streaming decode, LoRAs, multi-clip timing, extend, and the toy model. Importing this package imports no
torch; ``pixgen.engine.ltx2.engine`` does."""
