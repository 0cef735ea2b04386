"""A module that takes half a second to import: a fork server preloading it is not ready at once."""

import time

time.sleep(0.5)
