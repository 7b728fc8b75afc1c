"""cineprop: few-shot segmentation of medical cines (MONAI Label app + 3D Slicer module).

Dependencies are read from ``requirements/*.txt`` (ranges); exact, tested versions are in
``requirements/constraints.txt``, which the Makefile applies.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / f"{name}.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="cineprop",
    version="0.1.0",
    description="Few-shot segmentation of medical videos and cine series with spatiotemporal consistency relearning",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    include_package_data=True,
    package_data={"cineprop": ["weights/*.pt"]},
    install_requires=requirements("core"),
    extras_require={
        # monailabel itself is installed with --no-deps by the Makefile (its sam2 dependency builds a CUDA torch).
        "app": requirements("app"),
        "io": requirements("io"),
        "cohort": requirements("cohort"),
        "dev": requirements("dev"),
        # registration peers measured against the model: ANTs SyN (peers), elastix B-spline (elastix, 1.6 GB)
        "peers": requirements("peers"),
        "elastix": requirements("elastix"),
    },
    entry_points={"console_scripts": ["cineprop=cineprop.cli:main"]},
)
