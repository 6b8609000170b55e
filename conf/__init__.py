# Makes conf/ the Python package makemore_sweep.conf (src/makemore_sweep/conf links here), so
# Hydra finds these configs through pkg://makemore_sweep.conf in a checkout and in the wheel.
