"""The paper's published numbers (../shared/paper/tables.md), to stand beside ours."""

from __future__ import annotations

# Tables 1, 2, 5: model -> (architecture, accuracy %, relative %)
ARCHITECTURE_TABLES = {
    "table1": {"Mentor": ("c-mp-c-mp-fc2-s", 97.46, None), "Student-A": ("c-mp-c-mp-fc2-s", 97.38, 99.91),
               "Student-B": ("c-mp-fc2-s", 97.17, 99.70)},
    "table2": {"Mentor": ("c2-mp-c2-mp-c2-mp-fc2-s", 73.14, None),
               "Student-A": ("c2-mp-c2-mp-c2-mp-fc2-s", 73.58, 100.6),
               "Student-B": ("c2-mp-c-fc2-s", 72.38, 98.96), "Student-C": ("c2-mp-fc2-s", 69.63, 95.2)},
    "table5": {"Mentor": ("(c-bn-d)9-fc-bn-d-s", 20.45, None), "Student-A": ("(c-bn-d)9-fc-bn-d-s", 20.47, 100.09),
               "Student-B": ("(c-bn-d)6-fc-bn-d-s", 20.51, 100.29), "Student-C": ("(c-bn-d)3-fc-bn-d-s", 19.60, 95.84)},
}
ARCHITECTURE_TABLES["table6"] = ARCHITECTURE_TABLES["table2"]

# Table 3 (removal bound) and Table 4 (out-of-domain ratio): value -> student -> accuracy %
_S = ("Student-A", "Student-B", "Student-C")
TABLE3 = {b: dict(zip(_S, v)) for b, v in {
    0.05: (73.01, 71.74, 69.28), 0.10: (73.29, 71.38, 68.79), 0.20: (72.45, 71.34, 68.98),
    0.30: (73.02, 71.32, 68.58), 0.40: (72.92, 70.73, 68.36), 0.50: (73.02, 70.72, 68.15),
    0.60: (72.32, 69.77, 67.16), 0.70: (72.21, 69.35, 66.62), 0.80: (71.86, 69.36, 66.62),
    0.90: (72.33, 69.64, 66.94)}.items()}
TABLE4 = {r: dict(zip(_S, v)) for r, v in {
    0.05: (73.36, 71.2, 68.96), 0.10: (73.42, 71.45, 69.04), 0.20: (73.36, 71.68, 69.01),
    0.30: (73.17, 71.49, 69.35), 0.40: (73.30, 71.37, 69.05), 0.50: (73.20, 71.53, 68.96),
    0.60: (73.16, 71.58, 69.04)}.items()}

# Table 6: inference seconds on the whole test set (GTX 1050 Ti, GTX 1070)
TABLE6 = {
    ("mnist", "Mentor"): (0.551, 0.652), ("mnist", "Student-B"): (0.399, 0.609),
    ("cifar10", "Mentor"): (1.637, 1.097), ("cifar10", "Student-B"): (1.275, 0.922),
    ("cifar10", "Student-C"): (1.129, 0.859),
    ("tiny_imagenet", "Mentor"): (6.328, 3.137), ("tiny_imagenet", "Student-B"): (4.826, 2.449),
    ("tiny_imagenet", "Student-C"): (4.089, 2.194),
}
