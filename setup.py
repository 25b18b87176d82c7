from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="django-ws",
    version="0.2.0",
    description="WebSocket handlers for Django: a Tornado edge, ZeroMQ, and ordinary Django code in workers.",
    long_description=Path(__file__).with_name("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    packages=find_packages(include=["django_ws", "django_ws.*"]),
    package_data={"django_ws": ["static/django_ws/*.js"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=["Django>=4.2,<6.0", "tornado>=6.5,<7", "pyzmq>=25"],
    extras_require={
        "gevent": ["gevent>=23.9"],
        "uvloop": ["uvloop>=0.19"],
        "postgres": ["psycopg[binary]>=3.1"],
        "jwt": ["PyJWT[crypto]>=2.8"],
        "test": [
            "pytest>=8",
            "pytest-django>=4.8",
            "pytest-timeout>=2.2",
            "websockets>=13",
            "gevent>=23.9",
            "psycopg[binary]>=3.1",
            "playwright>=1.40",
            "uvloop>=0.19",
            "PyJWT[crypto]>=2.8",
        ],
        "bench": ["channels>=4", "uvicorn[standard]>=0.29", "daphne>=4", "uvloop>=0.19"],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "Programming Language :: Python :: 3.11",
        "License :: OSI Approved :: BSD License",
    ],
)
