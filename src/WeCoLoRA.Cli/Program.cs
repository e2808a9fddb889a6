return WeCoLoRA.Cli.CliApp.Run(args);
