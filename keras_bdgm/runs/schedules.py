"""Learning-rate schedules of keras_bdgm's models, registered with Keras when keras_bdgm is imported.

Example:

    schedule = ExponentialDecayWithFloor(2e-3, 0.999995, 5e-4)   # the ResNet VAE's
    optimizer = tf.keras.optimizers.Adam(schedule)
"""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="keras_bdgm")
class ExponentialDecayWithFloor(tf.keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = max(initial * decay**step, floor): the ResNet VAE's schedule."""

    def __init__(self, initial, decay, floor):
        self.initial, self.decay, self.floor = float(initial), float(decay), float(floor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        return tf.maximum(self.initial * tf.pow(self.decay, step), self.floor)

    def get_config(self):
        return {"initial": self.initial, "decay": self.decay, "floor": self.floor}
