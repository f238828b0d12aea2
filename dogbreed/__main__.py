from dogbreed.cli import main

if __name__ == "__main__":  # a spawned worker process (dogbreed serve's) imports this module without running it
    main()
