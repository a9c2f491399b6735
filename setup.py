from setuptools import find_packages, setup

setup(
    name="wireleap-relay",
    version="0.7.0",  # keep equal to wireleap_relay.version.BASE_VERSION
    description="Wireleap relay: routes Wireleap users' traffic over TLS 1.3 + HTTP/2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    # The single file carries wheels for exactly these (contrib/singlefile.py).
    python_requires=">=3.10",
    classifiers=[
        "Programming Language :: Python :: 3 :: Only",
        *(f"Programming Language :: Python :: 3.{minor}" for minor in range(10, 15)),
        "Programming Language :: Python :: Implementation :: CPython",
        "Operating System :: POSIX :: Linux",
        "License :: OSI Approved :: MIT License",
    ],
    packages=find_packages(include=["wireleap_relay", "wireleap_relay.*"]),
    install_requires=[
        "gevent>=23.9,<27",
        "h2>=4.1,<5",
        "pynacl>=1.5,<2",
        "requests>=2.31,<3",
        "docopt-ng>=0.9,<1",
        "cryptography>=41,<51",
        "bcrypt>=4.0,<6",
        "prometheus_client>=0.17,<1",
    ],
    extras_require={
        "test": ["pytest>=7.4", "pytest-timeout>=2.2", "ruff>=0.5", "shiv==1.0.8",
                 "hypothesis>=6.100"],
    },
    entry_points={"console_scripts": ["wireleap-relay=wireleap_relay.__main__:main"]},
)
