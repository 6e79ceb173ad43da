"""Packaging: one distribution whose top-level folders land under the ``adapterlab`` namespace.

The repository keeps ``registry/``, ``training/``, ``cli/`` and ``migrations/`` at the top level
(they are separate boxes in the design), but installing them under generic names such as
``registry`` would collide with other packages, so each folder is mapped into ``adapterlab.*``.
Sub-packages are discovered by walking each folder, so adding one needs no edit here.
"""

from setuptools import find_packages, setup

PACKAGE_ROOTS = {
    "adapterlab": "adapterlab",
    "adapterlab.registry": "registry",
    "adapterlab.training": "training",
    "adapterlab.cli": "cli",
    "adapterlab.migrations": "migrations",
}


def _packages() -> list[str]:
    names = []
    for name, folder in PACKAGE_ROOTS.items():
        names.append(name)
        names.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return names


setup(packages=_packages(), package_dir=PACKAGE_ROOTS)
