"""Plan + exact engine rows → released rows: noise, stored answers, EXPLAIN, attack detectors. No I/O."""
