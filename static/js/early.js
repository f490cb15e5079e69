// Loaded before the body: marks the page as scripted so the phone menu starts closed without a flash.
document.documentElement.classList.add("js");
