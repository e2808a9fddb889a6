namespace WeCoLoRA.Checkpoints;

/// <summary>
/// A checkpoint file could not be read or written. The message is one line that names the file,
/// the offending key or value, and what to do about it.
/// </summary>
public sealed class CheckpointException(string message) : Exception(message);
