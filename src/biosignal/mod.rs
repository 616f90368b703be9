//! The bio-signal track (EEG, ECG, EMG, accelerometer): pretraining objectives here; readers,
//! windows, resampling and metrics beside them.
pub mod objectives;
