"""Arrays of 1 to 8 MiB allocated and freed among long-lived small objects: the
case where RSS is not given back after the big arrays are gone."""
import random
import time

import numpy as np

rng = random.Random(1)
keep = []          # long-lived small objects, allocated between the arrays
arrays = []
for step in range(250):
    a = np.ones(rng.randint(1, 8) * (1 << 20) // 8)  # 1..8 MiB of float64, every page touched
    arrays.append(a)
    keep.append({"step": step, "name": f"object {step}", "values": list(range(20))})
    if len(arrays) > 8:
        arrays.pop(rng.randrange(len(arrays)))
arrays.clear()     # the big arrays are gone; the small objects stay
time.sleep(0.1)    # RSS as it stands afterwards (10 samples at exec's 100 Hz)
print(len(keep))
