package remount

import (
	"encoding/json"

	"github.com/moby/moby/api/types/container"
)

// configOf converts an image's config (as ImageInspect returns it) into the
// container config a commit takes; nil gives an empty config.
func configOf(imageConfig any) (*container.Config, error) {
	cfg := &container.Config{}
	if imageConfig == nil {
		return cfg, nil
	}
	b, err := json.Marshal(imageConfig)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return cfg, nil
	}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
