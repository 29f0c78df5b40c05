# Only what cffi needs; everything else lives in pyproject.toml. cffi builds the core
# against CPython's stable ABI (_native.abi3.so), so the wheel says so: cp311-abi3-<platform>.
from setuptools import setup

setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
