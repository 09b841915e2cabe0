"""itop_tf: dynamic sparse training with In-Time Over-Parameterization."""

import setuptools

setuptools.setup(
    name="itop_tf",
    version="0.1.0",
    description=("Dynamic sparse training (SET/RigL with In-Time "
                 "Over-Parameterization) for Keras 3 (TensorFlow, JAX) and "
                 "tf_keras/TF-MOT."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=setuptools.find_packages(include=["itop_tf", "itop_tf.*"]),
    python_requires=">=3.10",
    # The shared code and the Keras 3 front-end need Keras 3 alone: with
    # the JAX or PyTorch backend, TensorFlow is optional.
    install_requires=[
        "keras==3.15.1",
        "absl-py==1.4.0",
        "numpy>=1.26,<3",
    ],
    extras_require={
        # Keras 3 on the TensorFlow backend; LiteRT export, TensorBoard.
        "tensorflow": ["tensorflow==2.21.0", "tensorboard==2.21.0",
                       "ai-edge-litert==2.3.0"],
        # The tf_keras/TF-MOT front-end (`itop_tf.tf_keras`), the launchers.
        "tf_keras": ["tensorflow==2.21.0", "tf-keras==2.21.0",
                     "tensorflow-model-optimization==0.8.1",
                     "tensorboard==2.21.0", "ai-edge-litert==2.3.0"],
        "jax": ["jax==0.10.2", "jaxlib==0.10.2"],
        "torch": ["torch==2.14.1"],
        "data": ["tensorflow-datasets==4.9.10", "importlib_resources==7.1.0"],
        "test": ["pytest==9.0.3", "pytest-xdist==3.8.0", "scikit-learn==1.9.1",
                 "tensorflow-datasets==4.9.10", "importlib_resources==7.1.0"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
